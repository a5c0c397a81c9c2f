// The Lua scripts are read at run time next to the compiled module that loads them.
const { cpSync, existsSync } = require('node:fs');
const { join } = require('node:path');
const root = join(__dirname, '..');
for (const dir of ['store', 'limits']) {
  const from = join(root, 'src', dir, 'lua');
  if (existsSync(from)) cpSync(from, join(root, 'dist', dir, 'lua'), { recursive: true });
}
