import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], 'utf8'));
const errors = diagnostics.filter(d => d.severity === 0);
for (const d of diagnostics) console.log(`${['error','warning','info','hint'][d.severity]} ${d.code} ${d.path.join('.')}: ${d.message}`);
if (!document || errors.length) { console.log(`INVALID: ${errors.length} error(s)`); process.exit(1); }
console.log(`valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ${document.messages().length} messages`);
