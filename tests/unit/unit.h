/* unit.h - a two-macro TAP harness for the lib/ unit tests. */
#ifndef DBM_UNIT_H
#define DBM_UNIT_H

#include <stdio.h>

extern int unit_failed;
extern int unit_count;

/* CHECK(cond): record a failure with its line, keep going. */
#define CHECK(cond)                                                            \
	do                                                                         \
	{                                                                          \
		if (!(cond))                                                           \
		{                                                                      \
			printf("# %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);  \
			unit_failed = 1;                                                   \
		}                                                                      \
	} while (0)

/* TEST(fn): run one test function and print its TAP line. */
#define TEST(fn)                                                               \
	do                                                                         \
	{                                                                          \
		unit_failed = 0;                                                       \
		fn();                                                                  \
		printf("%s %d - unit: %s\n", unit_failed ? "not ok" : "ok",           \
			   ++unit_count, #fn);                                             \
	} while (0)

#endif
