// Microphone capture in the audio thread: mono, resampled to the server's rate,
// converted to PCM16 and posted to the page in chunks of `chunkMs` milliseconds.
//
// Resampling averages the input samples that fall into each output sample
// (a box filter), which keeps speech free of aliasing when going down from
// 44.1/48 kHz to 16 kHz, and repeats samples when going up.

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, chunkMs } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.size = Math.round((targetRate * chunkMs) / 1000);
    this.chunk = new Int16Array(this.size);
    this.filled = 0;
    this.sum = 0;
    this.count = 0;
    this.position = 0;
    this.last = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true; // nothing connected yet
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      this.sum += x / channels;
      this.count += 1;
      this.position += 1;
      while (this.position >= this.step) {
        this.position -= this.step;
        if (this.count > 0) {
          this.last = this.sum / this.count;
          this.sum = 0;
          this.count = 0;
        }
        this.push(this.last);
      }
    }
    return true;
  }

  push(x) {
    const s = Math.max(-1, Math.min(1, x));
    this.chunk[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.size) {
      this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
      this.chunk = new Int16Array(this.size);
      this.filled = 0;
    }
  }
}

registerProcessor("pcm-capture", PcmCapture);
