#version 450
#extension GL_KHR_shader_subgroup_ballot : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_vote : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
// ballot/elect/shuffle-xor/vote, integer atomics min/max/exchange/compare-swap, a std140 uniform
// block (vec3 -> packed_float3), a 2-D shared array, float16 storage and arithmetic
layout(local_size_x = 64) in;
layout(std140, binding = 0) uniform U { vec3 offset; float scale; ivec4 lim; } u;
layout(std430, binding = 1) readonly buffer I { int v[]; } iv;
layout(std430, binding = 2) buffer A { int mn; int mx; int xc; int cs; } acc;
layout(std430, binding = 3) buffer H { float16_t h[]; } hv;
layout(std430, binding = 4) writeonly buffer R { uint r[]; } res;
shared int tile[8][9];
void main() {
    uint i = gl_GlobalInvocationID.x;
    uint l = gl_LocalInvocationIndex;
    tile[l / 8u][l % 8u] = iv.v[i];
    memoryBarrierShared();
    barrier();
    int t = tile[l % 8u][l / 8u];
    atomicMin(acc.mn, t);
    atomicMax(acc.mx, t);
    atomicExchange(acc.xc, t);
    atomicCompSwap(acc.cs, 0, 5);
    uvec4 b = subgroupBallot(t > 0);
    res.r[i * 4u + 0u] = subgroupBallotBitCount(b);
    res.r[i * 4u + 1u] = uint(subgroupElect());
    res.r[i * 4u + 2u] = uint(subgroupShuffleXor(t, 1u) + int(subgroupAll(t > -100)));
    res.r[i * 4u + 3u] = uint(clamp(t, u.lim.x, u.lim.y) + 100) + uint(u.offset.y * u.scale);
    hv.h[i] = hv.h[i] * float16_t(2.0) + float16_t(0.5);
}
