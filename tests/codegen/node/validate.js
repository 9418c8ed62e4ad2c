// Parses AsyncAPI documents with the official parser and prints its diagnostics as JSON:
// {"<path>": [{"code", "message", "path", "severity"}, ...], ...}, severity 0 = error.
// Used once per test session by tests/codegen (node validate.js FILE...).
'use strict';
const fs = require('fs');
const { Parser } = require('@asyncapi/parser');

async function main(paths) {
  const parser = new Parser();
  const report = {};
  for (const path of paths) {
    const { diagnostics } = await parser.parse(fs.readFileSync(path, 'utf8'), { source: path });
    report[path] = diagnostics.map((d) => ({
      code: String(d.code),
      message: d.message,
      path: d.path.join('/'),
      severity: d.severity,
    }));
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + '\n');
  process.exit(2);
});
