/* kafka-mock - a real Kafka protocol peer for the tests: librdkafka's mock
 * cluster, listening on loopback. Prints its bootstrap servers on the
 * first line of stdout, creates the topics given as TOPIC:PARTITIONS, and
 * runs until stdin closes or SIGTERM/SIGINT arrives.  Lines on stdin take a
 * broker down or bring it back (its connections cut, new ones refused; the
 * partitions it leads wait for it, as when a broker restarts):
 *
 *   down ID
 *   up ID
 *
 *   kafka-mock [--brokers N] TOPIC:PARTITIONS... */
#define _POSIX_C_SOURCE 200809L
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop = 0;

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	int brokers = 1, i = 1;

	if (argc > 2 && strcmp(argv[1], "--brokers") == 0)
	{
		brokers = (int) strtol(argv[2], NULL, 10);
		i = 3;
	}
	if (brokers < 1)
		brokers = 1;
	/* the handle only hosts the cluster; keep its chatter down */
	rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (rk == NULL)
	{
		fprintf(stderr, "kafka-mock: error: %s\n", err);
		return 2;
	}
	mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (mc == NULL)
	{
		fprintf(stderr, "kafka-mock: error: could not create the mock cluster\n");
		return 2;
	}
	for (; i < argc; i++)
	{
		char *colon = strrchr(argv[i], ':');
		int parts = colon ? (int) strtol(colon + 1, NULL, 10) : 1;
		char *topic = colon ? strndup(argv[i], (size_t) (colon - argv[i])) : strdup(argv[i]);
		rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topic, parts > 0 ? parts : 1, 1);
		if (e)
		{
			fprintf(stderr, "kafka-mock: error: topic \"%s\": %s\n", topic, rd_kafka_err2str(e));
			return 2;
		}
		free(topic);
	}
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	char line[256];
	size_t used = 0;
	while (!stop)
	{
		struct pollfd p = {STDIN_FILENO, POLLIN, 0};
		ssize_t n;
		char *nl;
		if (poll(&p, 1, 200) <= 0)
			continue;
		n = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
		if (n <= 0)
			break; /* stdin closed: the test is over */
		used += (size_t) n;
		line[used] = '\0';
		while ((nl = strchr(line, '\n')) != NULL)
		{
			int id;
			*nl = '\0';
			if (sscanf(line, "down %d", &id) == 1)
				rd_kafka_mock_broker_set_down(mc, id);
			else if (sscanf(line, "up %d", &id) == 1)
				rd_kafka_mock_broker_set_up(mc, id);
			else if (line[0] != '\0')
				fprintf(stderr, "kafka-mock: unknown command \"%s\"\n", line);
			used -= (size_t) (nl + 1 - line);
			memmove(line, nl + 1, used + 1);
		}
		if (used == sizeof(line) - 1)
			used = 0; /* a line too long: dropped */
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
