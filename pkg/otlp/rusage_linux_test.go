package otlp

// rusageThread is Linux's RUSAGE_THREAD: getrusage of the calling thread.
const rusageThread = 1
