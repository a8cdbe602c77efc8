"""An n-gram language model as in PyTorch's word-embeddings tutorial: nn.Embedding, log_softmax,
NLLLoss and Adam, on a short text. Weights start from a fixed NumPy draw, so PyTorch and tapegrad
print the same losses to float32 rounding."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

text = ("the cat sat on the mat and the dog sat on the rug while the cat watched the dog "
        "and the dog watched the cat sit on the mat").split()
vocab = sorted(set(text))
word_to_ix = {w: i for i, w in enumerate(vocab)}
trigrams = [((text[i], text[i + 1]), text[i + 2]) for i in range(len(text) - 2)]
print(len(vocab), "words,", len(trigrams), "trigrams;", trigrams[:2])


class NGram(nn.Module):
    def __init__(self, vocab_size, dim, context):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, dim)
        self.linear1 = nn.Linear(context * dim, 32)
        self.linear2 = nn.Linear(32, vocab_size)

    def forward(self, inputs):
        embeds = self.embeddings(inputs).view((1, -1))
        return F.log_softmax(self.linear2(F.relu(self.linear1(embeds))), dim=1)


model = NGram(len(vocab), 6, 2)
draw = np.random.default_rng(3)
with torch.no_grad():
    for name, p in model.named_parameters():
        p.copy_(torch.from_numpy(draw.normal(0, 0.3, tuple(p.shape)).astype(np.float32)))
loss_function = nn.NLLLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)
losses = []
for epoch in range(30):
    total = 0.0
    for context, target in trigrams:
        idxs = torch.tensor([word_to_ix[w] for w in context], dtype=torch.long)
        model.zero_grad()
        loss = loss_function(model(idxs), torch.tensor([word_to_ix[target]], dtype=torch.long))
        loss.backward()
        optimizer.step()
        total += loss.item()
    losses.append(total)
    if epoch % 10 == 9:
        print("loss", epoch, total)
print(losses[-1] < losses[0])
lookup = model.embeddings(torch.tensor([word_to_ix["cat"]]))
print(lookup.shape, type(lookup.grad_fn).__name__)
with torch.no_grad():
    guess = model(torch.tensor([word_to_ix["sat"], word_to_ix["on"]])).argmax(dim=1).item()
print("after 'sat on':", vocab[guess])
