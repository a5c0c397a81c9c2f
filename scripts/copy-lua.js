// The Lua scripts are read at run time next to the compiled module that loads them.
const { cpSync } = require('node:fs');
const { join } = require('node:path');
const root = join(__dirname, '..');
cpSync(join(root, 'src', 'store', 'redis', 'lua'), join(root, 'dist', 'store', 'redis', 'lua'), { recursive: true });
