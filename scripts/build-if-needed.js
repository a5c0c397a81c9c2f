// `npm start` on a fresh checkout builds first; afterwards it rebuilds only when a source is newer.
const { statSync, readdirSync } = require('node:fs');
const { join } = require('node:path');
const { execSync } = require('node:child_process');
const root = join(__dirname, '..');

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

let built = 0;
try {
  built = statSync(join(root, 'dist/main.js')).mtimeMs;
} catch {}
if (built === 0 || newest(join(root, 'src')) > built) {
  execSync('npm run build', { cwd: root, stdio: 'inherit' });
}
