#version 450
// a 2-D grid: transpose a width x height matrix with 8x8 workgroups (edges bounds-checked)
layout(local_size_x = 8, local_size_y = 8) in;
layout(push_constant) uniform Size { uint width; uint height; } size;
layout(std430, binding = 0) readonly buffer In { float m[]; } inp;
layout(std430, binding = 1) writeonly buffer Out { float t[]; } outp;
void main() {
    uvec2 p = gl_GlobalInvocationID.xy;
    if (p.x < size.width && p.y < size.height) {
        outp.t[p.x * size.height + p.y] = inp.m[p.y * size.width + p.x] + float(gl_WorkGroupID.y);
    }
}
