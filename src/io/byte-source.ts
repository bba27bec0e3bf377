// Random access to the bytes of a file or an in-memory buffer, so readers can fetch only the
// parts they need (a ZIP's central directory, then single records) without loading a whole
// multi-gigabyte checkpoint. Every error names the source (normally the file path).

import * as fs from 'node:fs';

export interface ByteSource {
  /** Name used in error messages, normally the file path. */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes starting at `offset`; throws a truncation error otherwise. */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

/** The error every file reader throws for bad input: `file` is the file (or source name) it is
 *  about, and the message names it too. Anything else a reader throws is a bug in the reader.
 *  Its name stays 'Error', so String(err) reads as it always did; tell it apart by instanceof. */
export class FileFormatError extends Error {
  constructor(
    readonly file: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A FileFormatError whose message starts with the file it is about: `model.pt: what went wrong`. */
export function fileError(source: string, message: string, options?: ErrorOptions): FileFormatError {
  return new FileFormatError(source, `${source}: ${message}`, options);
}

export function bufferSource(bytes: Uint8Array, name: string): ByteSource {
  return {
    name,
    size: bytes.length,
    read(offset, length) {
      checkRange(name, bytes.length, offset, length);
      return bytes.subarray(offset, offset + length);
    },
    close() {},
  };
}

export function fileSource(path: string): ByteSource {
  const fd = fs.openSync(path, 'r');
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  let open = true;
  return {
    name: path,
    size,
    read(offset, length) {
      checkRange(path, size, offset, length);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, out, done, length - done, offset + done);
        if (n === 0)
          throw fileError(path, `truncated: could not read byte ${offset + done} (file shrank while reading?)`);
        done += n;
      }
      return out;
    },
    close() {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

function checkRange(name: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw fileError(name, `invalid byte range (offset ${offset}, length ${length})`);
  }
  if (offset + length > size) {
    throw fileError(name, `truncated: needs bytes ${offset}..${offset + length} but the file has only ${size} bytes`);
  }
}
