"""Fine-tuning students with LLaMA-Factory: SFT, then DPO whose reference model is the SFT model.

The paper (Xie et al., SIGDIAL 2025, arXiv:2507.08151) trains every student in two steps with
LLaMA-Factory (LoRA rank 8, lr 5e-5, 3 epochs, bf16, batch 2; DPO beta 0.1, sigmoid loss). This
package registers the training methods (stages) and their trainers (:mod:`.methods`: the
``Trainer`` protocol, a dataset and a base model in, an adapter directory out), runs one job with
its stage's trainer (:mod:`.run`), writes one LLaMA-Factory YAML per job from the workflow config
(:mod:`.llamafactory_config`) and runs ``llamafactory-cli train`` on it
(:mod:`.llamafactory_trainer`), resolves student entries to model ids or paths (:mod:`.students`)
and builds the offline ``tiny`` plumbing student (:mod:`.tiny_model`). A second trainer (e.g.
PRIDE-style distillation) is a module beside these plus one registry line.
"""
