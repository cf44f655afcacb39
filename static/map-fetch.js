// Fetch helpers for the map page: every failure becomes an Error whose message names the URL.

async function get(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: ${e.message}`);
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

export async function fetchJSON(url) {
  const response = await get(url);
  try {
    return await response.json();
  } catch (e) {
    throw new Error(`${url}: ${e.message}`);
  }
}

export async function fetchBlob(url) {
  return (await get(url)).blob();
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Fetches a little-endian uint16 array of exactly `length` values. */
export async function fetchU16(url, length) {
  const buffer = await (await get(url)).arrayBuffer();
  if (buffer.byteLength !== length * 2) {
    throw new Error(`${url}: expected ${length * 2} bytes, got ${buffer.byteLength}`);
  }
  const values = new Uint16Array(buffer);
  if (!LITTLE_ENDIAN) {
    const view = new DataView(buffer);
    for (let i = 0; i < length; i++) values[i] = view.getUint16(i * 2, true);
  }
  return values;
}
