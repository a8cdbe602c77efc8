"""torch.nn layers, each a few lines over nn.functional."""
from .activation import (ELU, GELU, Hardtanh, LeakyReLU, LogSigmoid, LogSoftmax, Mish, ReLU,
                         ReLU6, SiLU, Sigmoid, Softmax, Softmin, Softplus, Softsign, Tanh)
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .conv import Conv1d, Conv2d
from .linear import Bilinear, Flatten, Identity, Linear, Unflatten
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss,
                   MSELoss, NLLLoss, SmoothL1Loss)
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .rnn import GRU, GRUCell, LSTM, LSTMCell, RNN, RNNBase, RNNCell
from .extra import (CELU, GLU, SELU, AdaptiveAvgPool1d, AvgPool1d, ConstantPad2d,  # noqa: F401
                    CosineEmbeddingLoss, CosineSimilarity, DataParallel, Dropout1d, Dropout2d,
                    GaussianNLLLoss, GroupNorm, Hardsigmoid, Hardswish, InstanceNorm2d,
                    MarginRankingLoss, MaxPool1d, MultiheadAttention, PairwiseDistance,
                    PixelShuffle, PoissonNLLLoss, PReLU, Softmax2d, SoftMarginLoss, Softshrink,
                    Tanhshrink, Threshold, TransformerEncoder, TransformerEncoderLayer,
                    TripletMarginLoss, Upsample, ZeroPad2d)
from .sparse import Dropout, Embedding

__all__ = [name for name in dir() if name[0].isupper()]
