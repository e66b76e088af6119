/* secret.h - passwords are never shown: found in connection strings, URIs
 * and KEY=VALUE options, overwritten in the command line that ps shows, and
 * masked in every diagnostic line. */
#ifndef DBM_SECRET_H
#define DBM_SECRET_H

#include <stddef.h>

/*
 * Call first thing in main(), before getopt_long. Every argument holding a
 * password (password=VALUE in a conninfo string or a KEY=VALUE option such
 * as sasl.password=VALUE, user:VALUE@ in a URI) is copied to the heap,
 * argv[i] is pointed at the copy, and the password in the original - the
 * memory /proc/PID/cmdline and ps show - is overwritten with '*'. The
 * passwords found there, in PGPASSWORD and in the conninfo variables
 * (DBM_SOURCE, DBM_TARGET, DBM_DB) are remembered so that dbm_secret_mask
 * hides them wherever a message would echo them.
 */
void dbm_secret_init(int argc, char **argv);

/* Remember one more secret (n bytes of s; copied). Values shorter than 4
 * bytes are not remembered: masking them would garble every message. */
void dbm_secret_add(const char *s, size_t n);

/*
 * Mask passwords in the NUL-terminated text in buf (size bytes, text
 * truncated to fit): every remembered secret, and every value that looks
 * like one (password=VALUE, user:VALUE@ after "://"), becomes "***".
 */
void dbm_secret_mask(char *buf, size_t size);

#endif
