// Cross-checks a glmstream GGUF file read by @huggingface/gguf against `glm-inspect --json`.
// Usage: node check.mjs --gguf FILE --json INSPECT_JSON [--pattern]
// --pattern: tensor bytes must hold the gguf_test pattern (byte p of the data section is byte
// p % 4 of the little-endian u32 p), as written by GgufSample.WriteForIndependentReaders.
import { gguf } from "@huggingface/gguf";
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    gguf: { type: "string" },
    json: { type: "string" },
    pattern: { type: "boolean", default: false },
  },
});
if (!args.gguf || !args.json) {
  console.error("usage: node check.mjs --gguf FILE --json INSPECT_JSON [--pattern]");
  process.exit(2);
}
const pkg = JSON.parse(
  readFileSync(new URL("./node_modules/@huggingface/gguf/package.json", import.meta.url), "utf8"),
);
const reader = `${pkg.name} ${pkg.version}`;
const label = basename(args.gguf);

const errors = [];
function check(cond, msg) {
  if (!cond) errors.push(msg);
  return cond;
}

const VALUE_TYPE = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8,
                     array: 9, u64: 10, i64: 11, f64: 12 };
// ggml type name -> [type id, bytes per element]
const GGML = { F32: [0, 4], F16: [1, 2], I8: [24, 1], I32: [26, 4], BF16: [30, 2] };

// glm-inspect writes u64/i64 as decimal strings and non-finite floats as "nan"/"inf"/"-inf".
function same(ours, theirs, type) {
  if (type === "u64" || type === "i64") return typeof theirs === "bigint" && BigInt(ours) === theirs;
  if (type === "f32" || type === "f64") {
    const v = typeof ours === "string" ? Number(ours.replace("inf", "Infinity")) : ours;
    return Object.is(v, theirs);
  }
  return ours === theirs;
}
const show = (v) => (typeof v === "bigint" ? `${v}n` : JSON.stringify(v));

let hf;
try {
  hf = await gguf(args.gguf, { allowLocalFile: true, typedMetadata: true });
} catch (e) {
  console.error(`check.mjs: ${reader} cannot parse ${args.gguf}: ${e.message}`);
  process.exit(1);
}
const ours = JSON.parse(readFileSync(args.json, "utf8"));
const fd = openSync(args.gguf, "r");
const fileSize = fstatSync(fd).size;

// ---- header --------------------------------------------------------------------------------
check(hf.littleEndian, "file is not little-endian");
check(hf.metadata.version === 3 && ours.version === 3,
      `version: ${reader} ${hf.metadata.version}, glm-inspect ${ours.version}`);
check(hf.metadata["general.architecture"] === "glm130b",
      `general.architecture is ${show(hf.metadata["general.architecture"])}, expected "glm130b"`);
check(hf.metadata["general.alignment"] === 4096 && ours.alignment === 4096,
      `alignment: ${reader} ${hf.metadata["general.alignment"]}, glm-inspect ${ours.alignment}`);
check(Number(hf.tensorDataOffset) === ours.data_offset,
      `data offset: ${reader} ${hf.tensorDataOffset}, glm-inspect ${ours.data_offset}`);
check(ours.data_offset % 4096 === 0, `data offset ${ours.data_offset} is not 4096-aligned`);
check(ours.file_size === fileSize, `file size: glm-inspect ${ours.file_size}, stat ${fileSize}`);

// ---- metadata ------------------------------------------------------------------------------
const ourKeys = Object.keys(ours.metadata);
const hfKeys = Object.keys(hf.typedMetadata).filter(
  (k) => !["version", "tensor_count", "kv_count"].includes(k));
check(hf.metadata.kv_count === BigInt(ourKeys.length),
      `kv_count: ${reader} ${hf.metadata.kv_count}, glm-inspect ${ourKeys.length}`);
check(JSON.stringify(hfKeys) === JSON.stringify(ourKeys),
      `metadata keys or their order differ:\n  ${reader}: ${hfKeys}\n  glm-inspect: ${ourKeys}`);
for (const key of ourKeys) {
  const o = ours.metadata[key];
  const t = hf.typedMetadata[key];
  if (!check(t !== undefined, `metadata '${key}' missing in ${reader}`)) continue;
  if (!check(t.type === VALUE_TYPE[o.type],
             `metadata '${key}': type ${t.type} in ${reader}, ${o.type} in glm-inspect`)) continue;
  if (o.type !== "array") {
    check(same(o.value, t.value, o.type),
          `metadata '${key}' (${o.type}): ${reader} ${show(t.value)}, glm-inspect ${show(o.value)}`);
    continue;
  }
  check(t.subType === VALUE_TYPE[o.elem_type],
        `metadata '${key}': element type ${t.subType} in ${reader}, ${o.elem_type} in glm-inspect`);
  check(!o.truncated, `metadata '${key}': glm-inspect truncated the array (use --array_elems=-1)`);
  if (!check(t.value.length === o.count,
             `metadata '${key}': ${t.value.length} elements in ${reader}, ${o.count} in glm-inspect`)) {
    continue;
  }
  o.values.forEach((v, i) => check(same(v, t.value[i], o.elem_type),
      `metadata '${key}'[${i}] (${o.elem_type}): ${reader} ${show(t.value[i])}, glm-inspect ${show(v)}`));
}

// ---- tensors -------------------------------------------------------------------------------
const dataOffset = Number(hf.tensorDataOffset);
const dataSize = fileSize - dataOffset;
check(hf.tensorInfos.length === ours.tensors.length,
      `tensor count: ${reader} ${hf.tensorInfos.length}, glm-inspect ${ours.tensors.length}`);
const tensorCount = Math.min(hf.tensorInfos.length, ours.tensors.length);
for (let i = 0; i < tensorCount; ++i) {
  const h = hf.tensorInfos[i];
  const o = ours.tensors[i];
  const where = `tensor #${i} '${o.name}'`;
  check(h.name === o.name, `${where}: ${reader} calls it '${h.name}'`);
  // The file stores ne[] innermost first; glm-inspect prints row-major (outermost first).
  const rowMajor = h.shape.map(Number).reverse();
  check(JSON.stringify(rowMajor) === JSON.stringify(o.shape),
        `${where}: shape ${JSON.stringify(rowMajor)} (ne reversed) in ${reader}, ` +
        `${JSON.stringify(o.shape)} in glm-inspect`);
  const ggml = GGML[o.type];
  if (!check(ggml !== undefined && h.dtype === ggml[0],
             `${where}: dtype ${h.dtype} in ${reader}, ${o.type} in glm-inspect`)) continue;
  check(Number(h.offset) === o.offset, `${where}: offset ${h.offset} in ${reader}, ${o.offset}`);
  check(o.offset % 4096 === 0, `${where}: offset ${o.offset} is not 4096-aligned`);
  const bytes = rowMajor.reduce((a, b) => a * b, 1) * ggml[1];
  check(bytes === o.bytes, `${where}: ${bytes} bytes from the shape, ${o.bytes} in glm-inspect`);
  check(o.offset + bytes <= dataSize, `${where}: ends past the end of the file`);
}
for (let i = 0; i + 1 < tensorCount; ++i) {
  const a = ours.tensors[i], b = ours.tensors[i + 1];
  check(a.offset + a.bytes <= b.offset, `tensors '${a.name}' and '${b.name}' overlap`);
}

// ---- extents: tile the data section, every tensor inside the one glm-inspect names -----------
const eo = hf.metadata["glmstream.extent.offset"] ?? [];
const es = hf.metadata["glmstream.extent.size"] ?? [];
const ex = hf.metadata["glmstream.extent.xxh64"] ?? [];
check(eo.length > 0 && eo.length === es.length && es.length === ex.length &&
      eo.length === ours.extents.length,
      `extent arrays: ${eo.length}/${es.length}/${ex.length} in ${reader}, ` +
      `${ours.extents.length} in glm-inspect`);
let next = 0n;
for (let e = 0; e < Math.min(eo.length, es.length, ours.extents.length); ++e) {
  check(eo[e] === next, `extent ${e} starts at ${eo[e]}, expected ${next} (extents must tile)`);
  check(eo[e] % 4096n === 0n && es[e] % 4096n === 0n, `extent ${e} is not 4096-aligned`);
  check(Number(eo[e]) === ours.extents[e].offset && Number(es[e]) === ours.extents[e].size,
        `extent ${e}: [${eo[e]}, +${es[e]}) in ${reader}, glm-inspect ` +
        `[${ours.extents[e].offset}, +${ours.extents[e].size})`);
  check(ex[e] === BigInt("0x" + ours.extents[e].xxh64), `extent ${e}: xxh64 differs`);
  next = eo[e] + es[e];
}
check(next === BigInt(dataSize), `extents end at ${next}, the data section has ${dataSize} bytes`);
for (const t of ours.tensors.slice(0, tensorCount)) {
  const e = t.extent;
  check(e >= 0 && e < eo.length && BigInt(t.offset) >= eo[e] &&
        BigInt(t.offset + t.bytes) <= eo[e] + es[e],
        `tensor '${t.name}' is not inside its extent ${e}`);
}

// ---- tensor bytes --------------------------------------------------------------------------
let checkedBytes = 0;
if (args.pattern) {
  for (const t of ours.tensors.slice(0, tensorCount)) {
    const buf = Buffer.alloc(t.bytes);
    const got = readSync(fd, buf, 0, t.bytes, dataOffset + t.offset);
    if (!check(got === t.bytes, `tensor '${t.name}': read ${got} of ${t.bytes} bytes`)) continue;
    for (let i = 0; i < t.bytes; ++i) {
      const p = t.offset + i;
      const want = (p >>> (8 * (p & 3))) & 0xff;
      if (!check(buf[i] === want, `tensor '${t.name}' byte ${i} (data offset ${p}): ` +
                                  `${buf[i]}, expected ${want}`)) break;
    }
    checkedBytes += t.bytes;
  }
}
closeSync(fd);

if (errors.length > 0) {
  console.error(`check.mjs: ${label}: ${errors.length} mismatch(es) between ${reader} and ` +
                `glm-inspect:`);
  for (const e of errors.slice(0, 30)) console.error(`  ${e}`);
  if (errors.length > 30) console.error(`  ... ${errors.length - 30} more`);
  process.exit(1);
}
console.log(`check.mjs: ${label} OK with ${reader}: ${ourKeys.length} metadata keys, ` +
            `${tensorCount} tensors, ${eo.length} extents` +
            (args.pattern ? `, ${checkedBytes} tensor bytes match the pattern` : ""));
