/* --repeat-penalty (runner/rt_sample.c) against llama.cpp's rule, worked by
 * hand: each distinct token among the last repeat_last_n ids has its logit
 * divided by the penalty when positive, multiplied when negative, once
 * however often it occurs; then greedy sampling picks from the result. */
#include <string.h>

#include "rt_chat.h"
#include "test_util.h"

int main(void)
{
    airllm_err err;
    rt_sampler s = {0, 0, 1, 0, NULL, 2.0, 64, NULL};
    CHECK(rt_sampler_init(&s, 20, &err) == 0, "init");

    /* token 1 three times, token 2 once, 0 and 3 not at all; -5 and 99 are
     * outside the vocabulary and ignored */
    float l[20] = {2, 3, -2, 1};
    const int32_t ids[] = {1, 2, 1, 1, -5, 99};
    rt_repeat_penalty(&s, l, 20, ids, 6);
    CHECK(l[0] == 2 && l[1] == 1.5f && l[2] == -4 && l[3] == 1,
          "penalized once each: %g %g %g %g", l[0], l[1], l[2], l[3]);
    CHECK(rt_sample(&s, l, 20) == 0, "greedy moves off the repeated token");

    /* the window: only the last 2 ids (1, 1 then 2 is out) */
    float w[20] = {2, 3, -2, 1};
    const int32_t ids2[] = {2, 1, 1};
    s.repeat_last_n = 2;
    rt_repeat_penalty(&s, w, 20, ids2, 3);
    CHECK(w[1] == 1.5f && w[2] == -2, "window of 2: %g %g", w[1], w[2]);

    /* the marks are cleared: a second call penalizes again */
    float z[20] = {0, 4};
    const int32_t one[] = {1};
    rt_repeat_penalty(&s, z, 20, one, 1);
    CHECK(z[1] == 2, "second call: %g", z[1]);

    /* 1 (the default) changes nothing */
    float u[20] = {2, 3, -2, 1};
    s.repeat_penalty = 1;
    rt_repeat_penalty(&s, u, 20, ids, 6);
    CHECK(u[1] == 3 && u[2] == -2, "penalty 1 is off");
    rt_sampler_free(&s);
    return test_summary();
}
