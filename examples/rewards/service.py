"""Customer registration with a reward program and an email service listening for it.

Run it with ``dasync run examples/rewards/service.py``. ``Customers`` fires
``customer_registered`` for every new customer; ``Rewards`` and ``Mailer``
subscribe to it in their constructors. Neither the publisher nor ``main()``
calls them: each subscribing service gets every event, once, and handles it in
a routine of its own, even if it was down when the event was published.

The event is published when the step of ``register`` that fired it commits,
never before (the outbox rule): a registration that fails, or a process that
crashes half-way, announces nothing that did not happen, and a replayed or
redelivered step does not announce it twice.
"""

from __future__ import annotations

import asyncio

# contracts.py sits next to this file; `dasync run` puts this folder on sys.path.
from contracts import Account, CustomerInfo, CustomerManagement, EmailService, RewardProgram

WELCOME_BONUS = 100
REFERRAL_BONUS = 50


class Customers(CustomerManagement):
    """Registers customers and announces each one with ``customer_registered``."""

    def __init__(self) -> None:
        self._count = 0

    async def register(self, name: str, email: str, referred_by: str | None = None) -> CustomerInfo:
        # Validate first: an event announces something that happened. (An event
        # fired before an exception is still published, because the failure is
        # the step's committed result; raising is not a rollback.)
        if "@" not in email:
            raise ValueError(f"{email!r} is not an email address")
        self._count += 1
        info = CustomerInfo(f"C-{self._count}", name, email, referred_by)
        print(f"customers: registered {name} as {info.customer_id}")
        # Fired inside a routine: put in this step's outbox, published after the
        # step is committed. Outside a routine (on a client proxy) it would be
        # published at once: `await client.proxy(CustomerManagement).customer_registered(info)`.
        self.customer_registered(info)
        return info


class Rewards(RewardProgram):
    """Credits a welcome bonus to each new customer, and a referral bonus to whoever
    brought them in."""

    def __init__(self, customers: CustomerManagement) -> None:
        self._accounts: dict[str, Account] = {}
        # A durable subscription: from now on every customer_registered event
        # starts one `on_customer_registered` routine in this service.
        customers.customer_registered += self.on_customer_registered

    async def on_customer_registered(self, info: CustomerInfo) -> None:
        # The handler is a routine like any other: it can call services, gather
        # and sleep. Both credits are durable sub-routine calls made in parallel;
        # each runs once, whatever is redelivered or replayed.
        credits = [self.credit(info.customer_id, WELCOME_BONUS, "welcome bonus")]
        if info.referred_by:
            credits.append(self.credit(info.referred_by, REFERRAL_BONUS, f"referred {info.name}"))
        await asyncio.gather(*credits)

    async def credit(self, customer_id: str, points: int, reason: str) -> int:
        old = self._accounts.get(customer_id, Account(customer_id))
        new = Account(customer_id, old.points + points, [*old.history, reason])
        self._accounts[customer_id] = new
        print(f"rewards: {customer_id} +{points} points ({reason}), now {new.points}")
        return new.points

    async def account(self, customer_id: str) -> Account | None:
        return self._accounts.get(customer_id)


class Mailer(EmailService):
    """Sends a welcome email to each new customer, and a follow-up a little later."""

    def __init__(self, customers: CustomerManagement) -> None:
        self._sent: dict[str, list[str]] = {}
        customers.customer_registered += self.send_welcome

    async def send_welcome(self, info: CustomerInfo) -> None:
        await self.send(info.email, f"Welcome, {info.name}!")
        # A durable timer: a day in real life. The routine does not hold a
        # worker while it waits, and it survives a restart.
        await asyncio.sleep(0.5)
        await self.send(info.email, f"{info.name}, your first reward points are waiting")

    async def send(self, to: str, subject: str) -> None:
        # A real mailer would pass dasync.call_id() as the provider's idempotency
        # key: it is the same on every retry of this call.
        self._sent.setdefault(to, []).append(subject)
        print(f"mailer: to {to}: {subject}")

    async def outbox(self, email: str) -> list[str]:
        return list(self._sent.get(email, []))


async def main(
    customers: CustomerManagement, rewards: RewardProgram, mailer: EmailService
) -> dict[str, int]:
    """Registers a few customers, then watches the subscribers do their part."""
    alice = await customers.register("Alice", "alice@example.com")
    bob = await customers.register("Bob", "bob@example.com", referred_by=alice.customer_id)
    carol = await customers.register("Carol", "carol@example.com")
    try:
        await customers.register("Dave", "dave-at-example.com")
    except ValueError as exc:
        print(f"main: Dave was not registered ({exc}), so nothing was announced")
    new = [alice, bob, carol]
    print("main: 3 customers registered; rewards and emails follow on their own")

    # main() does not call the subscribers' handlers: it only polls their
    # results, with a durable sleep between looks, until every bonus and
    # every email is there.
    expected = {
        c.customer_id: WELCOME_BONUS
        + REFERRAL_BONUS * sum(o.referred_by == c.customer_id for o in new)
        for c in new
    }
    for _ in range(300):
        accounts = await asyncio.gather(*(rewards.account(c.customer_id) for c in new))
        mails = await asyncio.gather(*(mailer.outbox(c.email) for c in new))
        points = {a.customer_id: a.points for a in accounts if a is not None}
        if points == expected and all(len(m) == 2 for m in mails):
            break
        await asyncio.sleep(0.1)
    else:
        raise TimeoutError("the subscribers did not handle every registration in 30 s")

    for customer, account, sent in zip(new, accounts, mails, strict=True):
        assert account is not None
        # sorted: the events are handled concurrently, so credits come in no set order
        print(
            f"main: {customer.name} has {account.points} points "
            f"({', '.join(sorted(account.history))}) and {len(sent)} emails"
        )
    return {c.name: points[c.customer_id] for c in new}
