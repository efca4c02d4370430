"""The offline stack: local AWS (moto), the Segmind emulator and the real handlers, wired as on AWS."""
