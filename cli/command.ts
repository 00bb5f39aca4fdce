/** What every `sensorpipe` sub-command is: a one-line summary for the usage text, and a run. */
export interface Command {
  summary: string;
  /** Runs with the arguments after the command's name; resolves to the process's exit code. */
  run(argv: string[]): Promise<number>;
}
