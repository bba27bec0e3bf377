#!/usr/bin/env node
// qcapsnets: the command line of the reference's main.py (SPEC 6), in TypeScript.
//   qcapsnets [flags]             train (or --no-training: load), then the Q-CapsNets search
//   qcapsnets train [flags]       training only
//   qcapsnets evaluate [flags]    full-precision accuracy of --trained-weights-path (a packed
//                                 <stem>_quantized_<kind>.safetensors: its quantized accuracy)
//   qcapsnets search [flags]      the search on --trained-weights-path
//   qcapsnets sensitivity [flags] accuracy against bits, one layer's quantity at a time
//   qcapsnets report RUN.json     the HTML page of a search, sweep or sensitivity JSON
//   qcapsnets sweep [flags]       a grid of searches (tolerances x budgets x methods) in one run
//   qcapsnets merge A.json ...    the shards of a sweep in one result
//   qcapsnets export [flags]      a packed quantized model as golden vectors, ONNX or C
//   qcapsnets finetune [flags]    quantization-aware fine-tuning at given bits, then quantized
// Each command takes its own flags (flags.ts; `qcapsnets <command> --help` lists them). Every
// flag is checked (validate.ts) before any long work: training, loading data.
import { backendInfo, backendLineByDefault, kernels } from '../tensor/kernels.js';
import { exportCommand, searchCommand, sensitivityCommand, sweepCommand } from './commands.js';
import { evaluateCommand } from './evaluate-job.js';
import { finetuneCommand } from './finetune-job.js';
import { runMerge } from './merge-job.js';
import { helpText, parseCommandLine } from './parse.js';
import { runReportJob } from './report-job.js';
import { trainCommand } from './train-job.js';
import { checkFlagValues } from './validate.js';

const log = (line: string) => process.stdout.write(line + '\n');

async function main(): Promise<number> {
  backendLineByDefault(false); // the banner below names the backend
  const cl = parseCommandLine(process.argv.slice(2));
  if (cl.options.help) {
    log(helpText(cl.command));
    return 0;
  }
  // the commands that read files only
  if (cl.command === 'report') return runReportJob(cl.positional, cl.options.output, log);
  if (cl.command === 'merge') {
    runMerge(cl.positional, cl.options.output, log);
    return 0;
  }
  checkFlagValues(cl.command, cl.options);
  const started = performance.now();
  if (cl.options.threads !== null) kernels().setThreads(cl.options.threads);
  const name = cl.command === 'all' ? '' : cl.command + ' ';
  log(`qcapsnets ${name}on ${backendInfo()}, ${kernels().getThreads()} threads`);
  switch (cl.command) {
    case 'train':
      return trainCommand(cl.options, log, started);
    case 'evaluate':
      return evaluateCommand(cl.options, cl.given, log);
    case 'export':
      return exportCommand(cl.options, log);
    case 'sweep':
      return sweepCommand(cl.options, log);
    case 'sensitivity':
      return sensitivityCommand(cl.options, log, started);
    case 'search':
    case 'all':
      return searchCommand(cl.command, cl.options, log, started);
    case 'finetune':
      return finetuneCommand(cl.options, cl.given, log, started);
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`qcapsnets: error: ${err.message}\n`);
    // the stack (and its causes') only when asked: flags are parsed again, as the error may be theirs
    if (process.argv.slice(2).some((a) => a === '--verbose'))
      for (let e: unknown = err; e instanceof Error; e = e.cause) process.stderr.write(`${e.stack ?? e.message}\n`);
    process.exit(2);
  },
);
