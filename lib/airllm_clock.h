/* The one clock of the tools and the runner: progress bars, summaries,
 * per-unit timings and the pool's spin limit all measure with it. */
#ifndef AIRLLM_CLOCK_H
#define AIRLLM_CLOCK_H

/* CLOCK_MONOTONIC, in seconds: for intervals, never for dates. */
double airllm_now(void);

#endif
