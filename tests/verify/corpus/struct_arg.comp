#version 450
// struct arguments: a push-constant struct and an array of structs
layout(local_size_x = 16) in;
struct Particle { vec2 pos; float mass; uint id; };
layout(push_constant) uniform Params { float dt; uint count; vec2 gravity; } params;
layout(std430, binding = 0) buffer Particles { Particle p[]; } parts;
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= params.count) {
        return;
    }
    Particle q = parts.p[i];
    q.pos += params.gravity * params.dt * q.mass;
    q.id = q.id * 2u + 1u;
    parts.p[i] = q;
}
