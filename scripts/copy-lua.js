// The Lua scripts are read at run time next to the compiled store module.
const { cpSync } = require('node:fs');
const { join } = require('node:path');
const root = join(__dirname, '..');
cpSync(join(root, 'src/store/lua'), join(root, 'dist/store/lua'), { recursive: true });
