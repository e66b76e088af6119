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

#endif
