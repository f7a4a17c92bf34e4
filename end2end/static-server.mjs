// A minimal static file server for the client-side (Trunk) build in end-to-end tests:
// node static-server.mjs <dir> <port>. Serves files with the right content types, nothing more.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";

const [dir, port] = [resolve(process.argv[2]), Number(process.argv[3])];
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".wasm": "application/wasm",
  ".css": "text/css",
  ".svg": "image/svg+xml",
};

createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  const file = join(dir, normalize(path === "/" ? "/index.html" : path));
  if (!file.startsWith(dir)) {
    res.writeHead(403).end();
    return;
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404).end("not found");
  }
}).listen(port, "127.0.0.1");
