#version 450
// vec4 loads and stores with swizzles
layout(local_size_x = 32) in;
layout(std430, binding = 0) readonly buffer In { vec4 v[]; } inp;
layout(std430, binding = 1) writeonly buffer Out { vec4 w[]; } outp;
void main() {
    uint i = gl_GlobalInvocationID.x;
    vec4 a = inp.v[i];
    vec4 b = a.wzyx * vec4(1.0, 2.0, 3.0, 4.0) + vec4(a.xy, 0.5, 0.25);
    outp.w[i] = vec4(b.xy, max(b.z, 0.0), dot(a, vec4(1.0)));
}
