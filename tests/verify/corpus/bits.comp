#version 450
// integer and float built-ins: bitCount, findMSB, min/max/clamp, mix, fract, floor
layout(local_size_x = 32) in;
layout(std430, binding = 0) readonly buffer In { uint u[32]; float f[32]; } inp;
layout(std430, binding = 1) writeonly buffer Out { int bits[]; } outp;
layout(std430, binding = 2) writeonly buffer OutF { float g[]; } outf;
void main() {
    uint i = gl_GlobalInvocationID.x;
    uint u = inp.u[i];
    outp.bits[2u * i] = bitCount(u);
    outp.bits[2u * i + 1u] = findMSB(u);
    float f = inp.f[i];
    outf.g[i] = mix(floor(f), fract(f), 0.25) + clamp(f, -1.0, 1.0);
}
