"""torch.nn twins of cnnkit's models, for the tests that compare with PyTorch (torch passed in)."""


def lenet5(torch):
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 6, 5, padding=2), n.Tanh(), n.AvgPool2d(2), n.Conv2d(6, 16, 5), n.Tanh(),
                        n.AvgPool2d(2), n.Flatten(), n.Linear(400, 120), n.Tanh(), n.Linear(120, 84), n.Tanh(),
                        n.Linear(84, 10))
