from setuptools import setup

# The notebooks are the source; `exp` holds the modules exported from them.
with open('requirements.txt', encoding='utf-8') as f:
    requirements = [line.strip() for line in f if line.strip() and not line.startswith('#')]

setup(
    name='dl-foundations',
    version='0.1.0',
    description='Deep learning from the foundations, one notebook at a time',
    packages=['exp'],
    py_modules=['notebook2script', 'run_notebook', 'nbio', 'prose_numbers', 'dist_launch',
                'gpu_check'],
    python_requires='>=3.10',
    install_requires=requirements,
)
