// Checkpoint file formats: PyTorch torch.save files (.pt/.pth, ZIP and legacy), safetensors,
// and the ZIP and pickle layers beneath them. Loading never executes code from a file.

export {
  readCheckpoint,
  readStateDict,
  pickStateDict,
  writeStateDict,
  isNamedTensor,
  type ReadStateDictOptions,
  type CheckpointDict,
  type CheckpointValue,
  type NamedTensor,
  type StateDict,
} from './pt.js';
export {
  readSafetensors,
  writeSafetensors,
  readSafetensorsRaw,
  writeSafetensorsRaw,
  type SafetensorsContents,
  type RawSafetensorsContents,
  type RawTensor,
} from './safetensors.js';
export { ZipReader, zipBytes, zipChunks, type ZipEntryInfo, type ZipWriteEntry, type ZipWriteOptions } from './zip.js';
export { unpickle, PyDict, PyTuple, PyCallable, type PyValue, type PyObject, type UnpickleOptions } from './pickle.js';
export { writeFileAtomic } from './atomic-write.js';
export { crc32 } from './crc32.js';
export { FileFormatError } from './byte-source.js';
