"""PRIDE: distillation from privileged information (the third seed method; on in config.yaml).

Only the PRIDE abstract is public; each module implements one component it names, and README
("PRIDE: what the abstract fixes and what we chose") lists every design decision:

- :mod:`.privileged`: the empathy-reasoning teacher prompt over the privileged fields, and the
  proof that the student's input holds none of them;
- :mod:`.losses`: cross-entropy, reverse KL(student || teacher) on response tokens, RBF MMD of
  hidden features through a learned projection;
- :mod:`.attention`: the multi-source path (gated cross-attention over the encoded privileged
  text) whose gate anneals to zero, so inference needs no privileged input;
- :mod:`.config`: the ``training.pride`` settings and the teacher/student tokenizer check;
- :mod:`.reasoning`: optional privileged input, the teacher's own reasoning about each train
  dialogue, generated once per teacher through the LLM layer and its cache;
- :mod:`.data`: training examples (student and teacher token ids, aligned responses);
- :mod:`.loop`: the training loop that writes the same adapter files as the other methods.
"""
