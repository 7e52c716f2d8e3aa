/* hf-eco2ai step markers. Call eco2ai_step_begin/eco2ai_step_end around every optimizer
 * step, eco2ai_step_sync where a rank's compute of the step ends (multi-node jobs),
 * eco2ai_eval after every evaluation, and eco2ai_phase_begin/end around evaluation
 * passes and checkpoint saves. Under `eco2ai-probe record` the probe sees
 * each call (eBPF uprobes, or a Unix socket where eBPF is unavailable) and stamps it on
 * the clock of its power samples. Outside a recording a call costs a plain function call.
 * Library: libeco2ai_marker.so; the probe puts its path in ECO2AI_MARKER_LIB. */
#ifndef ECO2AI_MARKER_H
#define ECO2AI_MARKER_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct eco2ai_step {
    uint64_t step;
    uint64_t samples;  /* samples in this step (0 if unknown) */
    uint64_t tokens;   /* tokens in this step (0 if unknown) */
    double loss;       /* NaN if unknown */
    double lr;         /* NaN if unknown */
    double epoch;      /* NaN if unknown */
};

void eco2ai_step_begin(uint64_t step);
void eco2ai_step_end(const struct eco2ai_step *s);
void eco2ai_eval(uint64_t step, double eval_loss);
/* Loss and learning rate of `step` when the loop logs them after eco2ai_step_end
 * (NaN for unknown); they fill the step's row if it arrives within a second. */
void eco2ai_step_log(uint64_t step, double loss, double lr);
/* This rank's own compute of its current step has ended (e.g. its backward pass) and
 * it now waits on the step's collective: the last call inside a step is recorded as the
 * step's sync_ns, which tells a straggler from the ranks waiting for it. */
void eco2ai_step_sync(void);
/* The calling process enters / leaves a named phase: "eval" around an evaluation pass,
 * "checkpoint" around a save, or a name of the caller's own. Steps begun inside a span
 * carry its name (others are "train"); a span still open when the recording stops ends
 * there. Spans nest (at most 8 deep); eco2ai_phase_end closes the innermost open span
 * of that name. The name is NUL-terminated, cleaned to [A-Za-z0-9_.:-] (other bytes
 * become '_') and cut at 32 bytes; NULL or "" marks nothing and counts in
 * eco2ai_marker_lost. */
void eco2ai_phase_begin(const char *name);
void eco2ai_phase_end(const char *name);
/* Look ECO2AI_MARKER_SOCKET up again at the next call (a process that starts a new
 * recording after the library was loaded). */
void eco2ai_marker_reconnect(void);
/* Events this process could not hand to the probe (socket path), and phase marks
 * with a NULL or empty name (either path). */
uint64_t eco2ai_marker_lost(void);

#ifdef __cplusplus
}
#endif
#endif
