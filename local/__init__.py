"""The function run off AWS, in three folders: fixtures/, demo/ and chaos/.

- fixtures/: the local stack and test fixture library (a moto server, the Glider API emulator,
  an AWS fault proxy, the handler loaded as Lambda loads it, Lambda's SQS event source and
  context) that the tests, the demo, the chaos run and the benchmark all use;
- demo/: `make run` (`python -m local.demo`), every sample event through the real handler;
- chaos/: `make chaos` (`python -m local.chaos`), thousands of triggers under injected faults.
"""
