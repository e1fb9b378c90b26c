"""The live pipeline: stages over a bus (in-process or Redis Streams), candle sources, the recorder, the run record,
replay from the event log, observability. The top of the trading stack: it runs signal engines and strategies."""
