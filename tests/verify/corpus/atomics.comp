#version 450
// histogram: per-workgroup bins in shared memory (atomicAdd), then merged into the global bins
layout(local_size_x = 128) in;
layout(std430, binding = 0) readonly buffer In { uint keys[]; } inp;
layout(std430, binding = 1) buffer Hist { uint bins[16]; int total; } hist;
shared uint local_bins[16];
void main() {
    uint lid = gl_LocalInvocationID.x;
    if (lid < 16u) {
        local_bins[lid] = 0u;
    }
    barrier();
    atomicAdd(local_bins[inp.keys[gl_GlobalInvocationID.x] % 16u], 1u);
    barrier();
    if (lid < 16u) {
        atomicAdd(hist.bins[lid], local_bins[lid]);
    }
    if (lid == 0u) {
        atomicAdd(hist.total, 128);
    }
}
