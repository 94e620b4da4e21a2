"""pgti.models"""
