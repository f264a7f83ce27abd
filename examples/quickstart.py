"""promptvec as a library: train a soft prompt on a user task, evaluate it, label new text.

Run from the repository root:  .venv/bin/python examples/quickstart.py
Uses the embedded SmolLM2-135M-Instruct and the hand-written task in examples/tasks/ (~1 minute on CPU).
"""

from pathlib import Path

from promptvec import Origin, Predictor, TrainConfig, evaluate, get_task, load_backbone, load_task_data, train_prompt

HERE = Path(__file__).parent
TASK = str(HERE / "tasks" / "toy_sentiment.yaml")
OUT = Path("runs/example-quickstart")

backbone = load_backbone("default")  # frozen SmolLM2-135M-Instruct, converted once to the cache
task = get_task(TASK)
data = load_task_data(task)

origin = Origin.sample(backbone, rows=20, seed=0)  # reproducible: (model fingerprint, R, seed)
before = evaluate(backbone, task, data.test, origin.tensor(backbone))

config = TrainConfig(task=TASK, max_steps=12, eval_every=6, batch_size=8, val_examples=8)
result = train_prompt(config, OUT, backbone=backbone, task_data=data, resume=True)
print(f"untrained origin: {before.metrics}  ->  trained prompt: {result.test}")

predictor = Predictor(OUT, backbone=backbone)  # OUT/prompt is a PEFT adapter folder
for text, pred in zip(["an absolute joy to watch", "two hours I will never get back"],
                      predictor.predict(["an absolute joy to watch", "two hours I will never get back"]), strict=True):
    print(f"{pred.label:>9}  {text}")
