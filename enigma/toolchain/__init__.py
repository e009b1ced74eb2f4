"""External toolchains. `xcrun`: Apple's Metal compiler (.metal -> .air -> .metallib), macOS only."""
