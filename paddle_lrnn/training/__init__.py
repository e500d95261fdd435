"""Training: the loop behind paddle-lrnn-train and what it is made of.

  trainer:     Trainer (the training loop), resume_config, the optimizer and its gradient clipping
  recipes:     TrainConfig, each family's recipes and presets, resolve()
  evaluation:  evaluate (mean loss over a split), evaluate_model_dir (a saved model on a corpus)
  sampling:    sample_text, the sample printed at the end of a run
  checkpoint:  crash-safe checkpoints and exact resume
  schedule, metrics, amp, distributed: learning-rate schedules, metrics.jsonl and the loss plot, mixed precision,
               data parallelism
"""
