#version 450
// out[i] = a[i] * 2 + sqrt(abs(b[i])) for i < n (n from the array length)
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer A { float a[]; } inA;
layout(std430, binding = 1) readonly buffer B { float b[]; } inB;
layout(std430, binding = 2) writeonly buffer C { float c[]; } outC;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < uint(outC.c.length())) {
        outC.c[i] = inA.a[i] * 2.0 + sqrt(abs(inB.b[i]));
    }
}
