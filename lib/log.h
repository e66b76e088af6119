/* log.h - diagnostics on stderr, in PostgreSQL message style or JSON. */
#ifndef DBM_LOG_H
#define DBM_LOG_H

#include <stdbool.h>

void dbm_log_init(const char *progname);
void dbm_log_set_json(bool json);
const char *dbm_progname(void);

void dbm_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dbm_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dbm_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the "Try --help" hint after a usage error. */
void dbm_log_usage_hint(void);
/* While on, this thread's errors are kept (the first one) instead of
 * printed: another thread prints it when its turn comes. */
void dbm_log_hold_errors(bool on);
/* The kept error (malloc'd, to free), or NULL; no longer kept. */
char *dbm_log_take_held_error(void);
/* After getopt_long returned '?' (with opterr = 0): one error line naming
 * the argument, and the hint. */
void dbm_log_bad_option(char **argv, int optind_now);

#endif
