/* The C yardstick of the scalar-graph workloads: a tape interpreter written the way a person
   would write one in C for this graph (one switch per instruction, values and adjoints in two
   flat double arrays), compiled at run time with -O3 by benchmarks/workloads/scalar_graph.py.

   The tape is in compressed-row form: instruction k has opcode[k], writes its first output to
   slot first_out[k], and reads slots operand[operand_start[k] .. operand_start[k + 1]).
   Opcodes: 0 softplus (1 operand), 1 sum (n operands), 2 product (2 operands),
   3 softmax (n operands, n outputs in consecutive slots from first_out[k]).
   Slots below first_out[0] are the inputs; the caller fills them once. */
#include <math.h>

enum { SOFTPLUS = 0, SUM = 1, PRODUCT = 2, SOFTMAX = 3 };

static void forward(int n_instr, const int *opcode, const int *operand_start, const int *operand,
                    const int *first_out, double *value)
{
    for (int k = 0; k < n_instr; ++k) {
        const int *in = operand + operand_start[k];
        const int n_in = operand_start[k + 1] - operand_start[k];
        double *out = value + first_out[k];
        switch (opcode[k]) {
        case SOFTPLUS: {
            const double x = value[in[0]];
            /* log(1 + e^x) without overflow for large x */
            *out = (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
            break;
        }
        case SUM: {
            double total = 0.0;
            for (int i = 0; i < n_in; ++i) total += value[in[i]];
            *out = total;
            break;
        }
        case PRODUCT:
            *out = value[in[0]] * value[in[1]];
            break;
        case SOFTMAX: {
            double peak = value[in[0]], total = 0.0;
            for (int i = 1; i < n_in; ++i) peak = value[in[i]] > peak ? value[in[i]] : peak;
            for (int i = 0; i < n_in; ++i) total += (out[i] = exp(value[in[i]] - peak));
            const double scale = 1.0 / total;
            for (int i = 0; i < n_in; ++i) out[i] *= scale;
            break;
        }
        }
    }
}

static void adjoint(int n_instr, const int *opcode, const int *operand_start, const int *operand,
                    const int *first_out, const double *value, double *adj)
{
    for (int k = n_instr - 1; k >= 0; --k) {
        const int *in = operand + operand_start[k];
        const int n_in = operand_start[k + 1] - operand_start[k];
        const double *out = value + first_out[k];
        const double *out_adj = adj + first_out[k];
        switch (opcode[k]) {
        case SOFTPLUS:
            adj[in[0]] += out_adj[0] / (1.0 + exp(-value[in[0]]));   /* sigmoid */
            break;
        case SUM:
            for (int i = 0; i < n_in; ++i) adj[in[i]] += out_adj[0];
            break;
        case PRODUCT:
            adj[in[0]] += out_adj[0] * value[in[1]];
            adj[in[1]] += out_adj[0] * value[in[0]];
            break;
        case SOFTMAX: {
            /* d softmax: s_i * (a_i - sum_j s_j a_j) */
            double weighted = 0.0;
            for (int i = 0; i < n_in; ++i) weighted += out[i] * out_adj[i];
            for (int i = 0; i < n_in; ++i) adj[in[i]] += out[i] * (out_adj[i] - weighted);
            break;
        }
        }
    }
}

/* Value of slot n_slots - 1 and its gradient in adj[0 .. n_slots), `repeats` times over. */
double value_and_grad(int n_instr, const int *opcode, const int *operand_start,
                      const int *operand, const int *first_out, double *value, double *adj,
                      int n_slots, int repeats)
{
    for (int r = 0; r < repeats; ++r) {
        forward(n_instr, opcode, operand_start, operand, first_out, value);
        for (int i = 0; i < n_slots; ++i) adj[i] = 0.0;
        adj[n_slots - 1] = 1.0;
        adjoint(n_instr, opcode, operand_start, operand, first_out, value, adj);
    }
    return value[n_slots - 1];
}
