#version 450
// loops: a Horner polynomial over a runtime number of coefficients, and a while loop (Collatz steps)
layout(local_size_x = 64) in;
layout(push_constant) uniform P { int ncoef; } pc;
layout(std430, binding = 0) readonly buffer Coef { float c[]; } coef;
layout(std430, binding = 1) buffer X { float x[]; } xs;
layout(std430, binding = 2) writeonly buffer Steps { int steps[]; } st;
void main() {
    uint i = gl_GlobalInvocationID.x;
    float x = xs.x[i];
    float acc = 0.0;
    for (int k = pc.ncoef - 1; k >= 0; --k) {
        acc = acc * x + coef.c[k];
    }
    xs.x[i] = acc;
    uint n = i + 1u;
    int steps = 0;
    while (n != 1u) {
        n = (n % 2u == 0u) ? n / 2u : 3u * n + 1u;
        steps++;
    }
    st.steps[i] = steps;
}
