/* cmd_run.h - `braid run`, the in-process engine command of the braid CLI. */
#ifndef BRAID_CMD_RUN_H
#define BRAID_CMD_RUN_H

/* argv holds the arguments after "run". Returns the process exit code. */
int braid_cmd_run(int argc, char **argv);

#endif
