// Size of the dashboard's browser bundle as it goes over the wire: raw, gzip -9, brotli -11.
//   node benches/wasm-size.mjs target/site/pkg/sluice.wasm [more files…]
// (after `cargo leptos build --release`; or target/trunk-dist/*.wasm after `trunk build --release`)
import { readFileSync } from "node:fs";
import { gzipSync, brotliCompressSync, constants } from "node:zlib";

for (const file of process.argv.slice(2)) {
  const raw = readFileSync(file);
  const gzip = gzipSync(raw, { level: 9 }).length;
  const brotli = brotliCompressSync(raw, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length },
  }).length;
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(`${file}: raw ${raw.length} B (${kb(raw.length)}), gzip ${gzip} B (${kb(gzip)}), brotli ${brotli} B (${kb(brotli)})`);
}
