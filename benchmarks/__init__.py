"""voicepipe's benchmarks (a package so that the turn-taking suite can be imported by tests)."""
