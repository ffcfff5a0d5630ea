"""likelihoods"""
