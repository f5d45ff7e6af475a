"""The GPU path: LiveFX's own kernels (``kernels/livefx.cu``) on cuda-python's driver API.

Importing this package imports nothing CUDA; its modules do, and are imported only where the GPU
path is chosen (they raise ``BackendError`` saying why when cuda-python is missing).

- ``driver``: the few driver calls (``Device``, ``Stream``, ``DeviceBuffer``, ``PinnedArray``,
  the copies), each checked by ``check``.
- ``module``: the kernels on the device, the prebuilt fatbin or NVRTC (``Module``), and ``Gpu``,
  the device and its module shared by every session.
- ``launch``: what a launch is made of: launch shapes (``grid1``, ``grid2``, blocks), the structs
  passed by value (``Background``, ``ColorMatrix``), argument conversion, ``Op``.
- ``memory``: the ``Buffers`` arena and the CUDA graph helpers (capture, launch, destroy).
- ``chain``: ``FrameChain``, every buffer and launch of one session at one resolution, its
  ``ChainSettings`` and ``PlaneLevels``; the stages are functions of the chain:
- ``pre``: upload, halvings, preprocess (the graph before the model);
- ``refine``: box means, the guided filter, smoothing and the ramp, the matte's halvings;
- ``blur``: the blur plans and the masked blur at each plane's pyramid level;
- ``composite``: the background, the last launch (mattes + composite), the download (the graph
  after the model);
- ``frame``: the whole frame as one graph (the kernels runtime), the frame's gate (static frame,
  scene cut) and the GAN effect's frame;
- ``gan``: the GAN effect around its generator (input, RGB back to Y, U, V, the self-guided
  upsampling);
- ``net``: LiveFX's net engine on the device (``DeviceNet``: a planned model's launches, its
  weights uploaded once; ``GpuSegmenter``), from ``engine.inference.net``'s plans.
"""
