#version 450
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle_relative : require
#extension GL_KHR_shader_subgroup_ballot : require
// subgroup (simd-group) arithmetic: sum, max, inclusive prefix sum, shuffle down, broadcast first
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer In { int v[]; } inp;
layout(std430, binding = 1) writeonly buffer Out { int r[]; } outp;
void main() {
    uint i = gl_GlobalInvocationID.x;
    int x = inp.v[i];
    outp.r[i * 5u + 0u] = subgroupAdd(x);
    outp.r[i * 5u + 1u] = subgroupMax(x);
    outp.r[i * 5u + 2u] = subgroupInclusiveAdd(x);
    outp.r[i * 5u + 3u] = subgroupShuffleDown(x, 1u);
    outp.r[i * 5u + 4u] = subgroupBroadcastFirst(x) + int(gl_SubgroupInvocationID);
}
