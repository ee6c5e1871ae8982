"""PyTorch's MNIST example (pytorch/examples, mnist/main.py: conv -> relu -> conv -> relu ->
max_pool -> dropout -> flatten -> fc -> relu -> dropout -> fc -> log_softmax, nll_loss) ported to
cnnkit with import changes only, plus the explicit backward that is cnnkit's by design. Its
outputs, gradients and one SGD step match a torch twin holding the same weights."""

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import nn, optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        a1 = self.conv1(x)
        x = F.relu(a1)
        a2 = self.conv2(x)
        x = F.relu(a2)
        pooled_from = x
        x, indices = F.max_pool2d(x, 2, return_indices=True)
        x = self.dropout1(x)
        flattened_from = x
        x = F.flatten(x, 1)
        a3 = self.fc1(x)
        x = F.relu(a3)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        self._saved = (a1, a2, pooled_from, indices, flattened_from, a3, output)
        return output

    # The one difference by design: no autograd tape, so the model says how its forward runs back.
    def backward(self, grad_output, input_grad=True):
        a1, a2, pooled_from, indices, flattened_from, a3, output = self._saved
        g = F.log_softmax_backward(grad_output, output, dim=1)
        g = self.dropout2.backward(self.fc2.backward(g))
        g = self.fc1.backward(F.relu_backward(g, a3))
        g = self.dropout1.backward(F.flatten_backward(g, flattened_from))
        g = F.max_pool2d_backward(g, pooled_from, indices, 2)
        g = self.conv2.backward(F.relu_backward(g, a2))
        return self.conv1.backward(F.relu_backward(g, a1), input_grad=input_grad)


def _torch_net(torch):
    tnn, tf = torch.nn, torch.nn.functional

    class TorchNet(tnn.Module):
        """The example's Net; ``masks`` replaces its dropouts by given ones (cnnkit's draws)."""

        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, 32, 3, 1)
            self.conv2 = tnn.Conv2d(32, 64, 3, 1)
            self.dropout1 = tnn.Dropout(0.25)
            self.dropout2 = tnn.Dropout(0.5)
            self.fc1 = tnn.Linear(9216, 128)
            self.fc2 = tnn.Linear(128, 10)

        def forward(self, x, masks=None):
            x = tf.max_pool2d(tf.relu(self.conv2(tf.relu(self.conv1(x)))), 2)
            x = x * masks[0] if masks else self.dropout1(x)
            x = tf.relu(self.fc1(torch.flatten(x, 1)))
            x = x * masks[1] if masks else self.dropout2(x)
            return tf.log_softmax(self.fc2(x), dim=1)

    return TorchNet()


def _twins(torch):
    cnnkit.manual_seed(0)
    model = Net()
    twin = _torch_net(torch)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(1)
    data = rng.random((8, 1, 28, 28), dtype=np.float32)
    target = rng.integers(0, 10, 8)
    return model, twin, data, target


def _assert_close(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=2e-4, atol=2e-5, err_msg=what)


def test_training_step_matches_torch_twin():
    torch = pytest.importorskip("torch")
    model, twin, data, target = _twins(torch)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    for step in range(2):
        model.train()
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        model.backward(F.nll_loss_backward(output, target))
        optimizer.step()

        twin_optimizer.zero_grad()
        masks = [torch.from_numpy(m._mask) for m in (model.dropout1, model.dropout2)]
        twin_output = twin(torch.from_numpy(data), masks)
        twin_loss = torch.nn.functional.nll_loss(twin_output, torch.from_numpy(target))
        twin_loss.backward()
        _assert_close(output, twin_output, f"step {step} output")
        assert loss == pytest.approx(twin_loss.item(), rel=1e-5)
        twin_params = dict(twin.named_parameters())
        for name, p in model.named_parameters():
            _assert_close(p.grad, twin_params[name].grad, f"step {step} grad {name}")
        twin_optimizer.step()
        for name, p in model.named_parameters():
            _assert_close(p.data, twin_params[name], f"step {step} weights {name}")


def test_evaluation_matches_torch_twin_and_the_criterion_form_agrees():
    torch = pytest.importorskip("torch")
    model, twin, data, target = _twins(torch)
    model.eval()
    twin.eval()
    output = model(data)
    _assert_close(output, twin(torch.from_numpy(data)), "eval output")
    # The same step through nn.NLLLoss and the layer forms of log_softmax.
    criterion = nn.NLLLoss()
    loss = criterion(output, target)
    assert loss == pytest.approx(F.nll_loss(output, target))
    model.zero_grad()
    dx = model.backward(criterion.backward())
    assert dx.shape == data.shape
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    model(data)
    model.backward(F.nll_loss_backward(output, target))
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, grads[name])
