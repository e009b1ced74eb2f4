#version 450
// one sum per workgroup: shared-memory tree reduction with barriers
layout(local_size_x = 128) in;
layout(std430, binding = 0) readonly buffer In { float x[]; } inp;
layout(std430, binding = 1) writeonly buffer Out { float sums[]; } outp;
shared float tile[128];
void main() {
    uint lid = gl_LocalInvocationID.x;
    tile[lid] = inp.x[gl_GlobalInvocationID.x];
    barrier();
    for (uint s = 64u; s > 0u; s >>= 1u) {
        if (lid < s) {
            tile[lid] += tile[lid + s];
        }
        barrier();
    }
    if (lid == 0u) {
        outp.sums[gl_WorkGroupID.x] = tile[0];
    }
}
