"""models/temporal"""
