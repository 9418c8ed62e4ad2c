"""Differential tests: plain asyncio is the oracle.

A routine must behave as the same code does under plain asyncio with the service
objects wired directly to each other (no dasync), live, and after any crash. Every
program -- generated (``test_generated.py``) or hand-written (``test_corpus.py``)
-- runs:

* ``plain``: the service classes instantiated once each, constructor parameters
  typed with a contract given the instance implementing it (``_plain``), on an
  asyncio loop whose clock jumps to the next timer when nothing is ready
  (``_vloop``), each entry as its own task; when an entry returns, the tasks it
  left are cancelled and awaited, as ``asyncio.run`` does. Events fan out to
  one task per subscribed handler.
* ``live``: ``dasync.testing.runtime`` on the memory transport, virtual time, the
  entry started with ``rt.client.start``.
* ``forced``: the same with ``force_replay=True``.
* ``crash@k``: the runtime freezes right after the k-th journal commit (of any
  routine) -- that step's outbox is never sent, every other worker blocks at its
  next store or transport operation -- is killed (``Runtime.kill()``), and a new
  runtime on the same broker finishes; the client, a separate process, survives
  (``_dasync`` has the details). The generated test draws one crash point per
  program (``DASYNC_DIFF_CRASHES``); the corpus crashes after every commit in turn.
* ``nats-live``/``nats-forced`` (corpus): a real nats-server, real timers.

What must be equal (``_compare``):

1. **Each entry's outcome**: the value returned, or the exception raised
   (``CancelledError`` included, for a cancelled routine). Values compare by
   ``_shape.canon``: type names kept (``1`` vs ``1.0``, list vs tuple, a zoned vs a
   fixed-offset datetime differ), floats by ``repr`` (``nan`` equals ``nan``).
   Exceptions compare by ``_shape.shape``: class, ``args``, ``str()``, public
   attributes (and the standard fields of ``OSError``, ``UnicodeError``, exception
   groups' members, recursively), ``__notes__`` and the explicit ``__cause__``.
   Inside generated programs every caught exception's shape is part of the
   routine's value, so the shape is checked at every level a program catches.
2. **The multiset of effects.** Effects happen in leaf services (``_effects``):
   under dasync each is keyed by ``dasync.call_id()`` and its label, so code a
   killed worker was running, which runs again, records it once -- as the guide
   tells users to key side effects. A missing or extra effect is a disagreement,
   and so is an effect recorded with no routine running (code that ran inline
   where it should have been a durable call).
3. **The order of effects asyncio guarantees.** Not the global interleaving: a
   call to another service is a direct ``await`` in plain asyncio, which may
   finish without suspending, while a durable call always waits for a reply
   message, so concurrent branches legitimately interleave differently. What is
   compared is happens-before: ``a`` before ``b`` when they are in the same
   sequence (statements, ``try`` body/handler/``finally``, ``async with``
   enter/body/exit, a generator's items then its ``finally``, a call's start then
   its end) and ``a`` is certainly finished when its branch is -- e.g. a cancelled
   call's cleanup before whatever follows ``wait_for``/``timeout``/``TaskGroup``
   (``_order``, derived from the program). The corpus names its pairs.
4. **Nothing else raised**: e.g. the test runtime refusing to close because a
   routine diverged on replay.

Not compared, and why: tracebacks and the implicit ``__context__`` (diagnostics,
not values programs branch on); the note dasync adds to a rebuilt exception,
"Remote traceback (from the callee): ..." (a diagnostic); how many times leaf code
*ran* (``Effects.executions``: re-running cut-short work is the documented model);
timing beyond the virtual-time order of timers.

Programs whose asyncio outcome depends on scheduling are not generated
(``_ties``): every timed node has a distinct power-of-two duration, so two timers
never tie; a race (``gather`` without ``return_exceptions``, ``TaskGroup``, ``wait``
with ``FIRST_*``, ``as_completed``) has at most one branch that can finish
instantly and, when branches are cancelled as a group, at most one that can turn
its cancellation into an outcome -- otherwise plain asyncio itself answers by set
iteration order or loop-iteration counts. Tasks a construct leaves running are
awaited at the end of the routine that made them (``_interp``), so a sub-routine
(a direct await in plain asyncio, a routine of its own in dasync) finishes with
the same tasks done in both.

Where dasync legitimately differs (for the owner to decide; the tests encode the
asyncio side unless said otherwise):

* A sub-routine (``self.method()``) is a routine of its own: tasks it leaves
  pending are cancelled when it returns, as ``asyncio.run`` does, whereas a
  directly awaited method's tasks outlive it. Generated programs avoid the case;
  the corpus checks ``asyncio.run`` semantics for the entry routine only.
* Zero-virtual-time races (above) and the interleaving of concurrent branches.
* An event handler runs at some later moment (after the firing step commits):
  its effect is ordered after what precedes the firing, before nothing.
* An abandoned async generator is finalized when the loop gets to it: its
  ``finally`` is ordered after its items, before nothing.
* Context variables: only those declared with ``dasync.propagate`` travel with a
  durable call (docs/guide.md); the corpus declares its variable.
* A durable call never awaited has no oracle (asyncio only warns): the corpus
  requires dasync to fail the routine naming the call.
* ``client.start(Sub.inherited)``: ``Sub.inherited is Base.inherited``, so the guide
  starts it on the service of the defining class and ``client.proxy(Sub)`` reaches
  the subclass; the corpus follows that decision for the subclass entry.
* ``datetime.now()`` inside a routine cannot be intercepted (the guide points to
  ``time.time()``/``dasync.now()``): the corpus requires replay to fail loudly,
  naming the line, instead of agreeing with asyncio.
* ``finally`` blocks of an evicted routine (forced replay, cache eviction) run
  when CPython discards the coroutine; the guide says durable calls are refused
  there. ``Effects`` sets aside what runs under ``evicting_instance()``; anything
  else such code does is counted (a ``self.method()`` run inline, an event
  published at once were both found and fixed).
* Values JSON cannot carry as such (``inf``/``nan``, non-UTF-8 ``bytes``, a
  ``ZoneInfo`` zone, ints above 64 bits) are held to plain asyncio's values: if
  the codec decides to refuse some, those corpus expectations are to be changed.

Running: ``pytest tests/differential`` (1,000 generated programs, the corpus on
memory and NATS); ``DASYNC_DIFF_EXAMPLES=20000 pytest tests/differential`` or
``python -m tests.differential.run --examples 20000`` (random seed, printed) for
the long run. A failure prints every group of disagreements with a minimized
program, as Python-like text (``_program.render``).
"""
